"""onlyif.eval"""
