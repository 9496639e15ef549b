"""The revisions, oldest first; each file is one schema change.

Revision ids are short numbers so `interlock db upgrade` output stays readable.
"""
