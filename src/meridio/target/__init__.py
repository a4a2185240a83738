"""The example target application (``meridio example-target``), as Meridio's mconnect server."""
