"""The stages of a run, in data-flow order: exam -> teach -> train -> eval -> report.

Each module runs one stage from a `RunContext`; `stages.job` chains them and
streams the exam's mistakes straight into the teachers.
"""
