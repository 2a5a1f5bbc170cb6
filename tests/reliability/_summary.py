"""Lines the reliability tests report at the end of the run (the crash trials and their kill points)."""

LINES: list[str] = []
