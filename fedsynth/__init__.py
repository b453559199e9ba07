"""fedsynth: federated multi-party synthetic tabular data.

The core library shared by the supplier agent, the broker and the consumer client: schemas,
validated IO, preparation, synthesizers, privacy, audits, security and the wire format.
"""
