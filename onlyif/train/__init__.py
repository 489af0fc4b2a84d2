"""onlyif.train"""
