"""
This module contains examples of how to integrate and use the
    library in various frameworks and applications.
"""
