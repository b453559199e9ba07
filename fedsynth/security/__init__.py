"""Federation PKI, principals, signed attestations and encryption at rest."""
