"""onlyif.sweep"""
