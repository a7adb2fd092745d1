"""What every subsystem shares, and nothing subsystem-specific: one way to report an expected error (`errors`),
command-line conventions and argument types (`cli`), atomic writes and file reading (`fileio`), how a number was
made (`provenance`), the run record and a run's files (`runrecord`), and the one rule for "best" (`choice`).
No torch here (provenance imports it only to describe a device).
"""
