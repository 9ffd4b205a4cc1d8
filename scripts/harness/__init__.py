"""What the scripts under scripts/ share: free ports, child processes, waits
for a server to answer, report files, wrk runs, a ``hita serve`` environment,
and a TCP proxy that degrades one path on demand (``harness.proxy``).

Scripts run as ``python scripts/<name>.py``, which puts scripts/ on the import
path: they import ``harness.<module>``.
"""
