"""What a run shows a person: the summary table (:mod:`.tables`), index.html (:mod:`.html`),
its figures (:mod:`.plots`) and the classification metrics (:mod:`.metrics`)."""
