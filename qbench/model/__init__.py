"""The model under test and the data it is measured on: the user's model, the committed reference
or one trained here (:mod:`.under_test`), datasets and their splits (:mod:`.datasets`)."""
