"""Meridio in Python: attract external traffic over secondary networks and spread it, with no NAT,
over target applications that choose at runtime which traffic they take."""

__version__ = "0.1.0"
