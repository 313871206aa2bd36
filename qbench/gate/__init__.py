"""The regression gate: verdicts (:mod:`.verdicts`) on the statistics of :mod:`.stats`, against a
same-job base (:mod:`.base`), a stored run of this kind of machine (:mod:`.fingerprint`) or stored
predictions (:mod:`.stored`); its lines and gate.json (:mod:`.report`) and its self-check
(:mod:`.gatecheck`)."""
