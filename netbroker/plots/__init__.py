"""Plots for people: the network heat map, drawn by the CLI and the demo report.

An edge. May import the core and below.
"""
