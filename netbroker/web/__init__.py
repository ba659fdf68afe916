"""HTTP plumbing shared by the API and the dispatcher's wire: the app's dependencies
(engine, settings in force) and the bearer-token checks.

An edge below the other HTTP edges: may import the core and below, never
``netbroker.api`` or ``dispatcher`` (both import it).
"""
