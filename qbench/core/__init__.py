"""What every part of qbench stands on: resolved settings (:mod:`.config`), the one-line error
(:mod:`.errors`) and atomic, locked file writes (:mod:`.fsutil`)."""
