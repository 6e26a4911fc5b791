"""The provider: the only code that talks to a Veo relay.

- `client`: `ProviderClient`, every answer classified into an error kind;
- `mock`: a local stand-in for a relay (its error shapes, limits and faults on demand).
"""
