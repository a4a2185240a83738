"""The ``meridio`` command: a thin client of the APIs and the components' entry points."""
