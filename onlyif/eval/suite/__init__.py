"""A small pluggable evaluation suite: one module per task kind (``qa``, ``choice``, ``code``), a registry by
``kind:`` name (:mod:`.base`), the suite config (:mod:`.config`), the runner (:func:`.runner.run_suite`) and the
``onlyif eval suite`` command (:mod:`.cmd`)."""
