"""Everything that decides and marks: the gate (consent and policy), the marks (visible, invisible), provenance
(C2PA signing and reading), media I/O and verification. Reads the registry through narrow interfaces; never
imports `api`."""
