"""AdmissionReview in and out, the mutator pipeline, and the one JSONPatch it answers with."""
