"""Functional-correctness evaluation of generated code: benchmarks, sandboxed execution, pass@k.

Pure modules (no Ray): ``problems`` (the data types), ``sandbox`` (one fresh, limited process per program),
``benchmarks`` (HumanEval / MBPP / EvalPlus files), ``programs`` (problem + sample → program text), ``passk``,
``extract`` (code from chat answers). ``generate`` produces samples from a model (in process or on Ray Data
actors); ``execute`` scores samples in parallel; ``evaluate`` ties them together for ``onlyif eval code``.
"""
