"""Committee from Python: build or load a config, run all stages or one, read typed results and records.

    import committee
    from committee import Config, DatasetSection, EmulatorSection, RunSection, TeacherSection

    cfg = committee.load("configs/demo.toml")            # or build one: the msgspec Structs are the API
    result = committee.run(cfg, stage="teach")           # in a notebook too (its own loop, on its own thread)
    result.cost.total_usd, result.paths.train
    included = [s for s in committee.records(result) if s.included]
    # with an event loop of your own: result = await committee.arun(cfg)

The command (`committee --config ...`, or `python run.py` in a checkout) runs through this same code.
"""

from committee.config import config_from, load
from committee.job import arun, run
from committee.results import RunPaths, RunResult, records, train_records
from core.config import (
    AnswerSection,
    Config,
    DatasetSection,
    DpoSection,
    EmulatorSection,
    FieldsSection,
    HubSection,
    LoraSection,
    ReviewSection,
    RunSection,
    StudentSection,
    TeacherSection,
    TrainSection,
)
from core.errors import ConfigError, DataError
from core.records import TrainRecord
from core.samples import DecidedSample
from reports.cost import CostReport
from stages.lock import RunDirBusy
from stages.problems import Problem
from student.evaluate import EvalEntry

__all__ = [
    "AnswerSection",
    "Config",
    "ConfigError",
    "CostReport",
    "DataError",
    "DatasetSection",
    "DecidedSample",
    "DpoSection",
    "EmulatorSection",
    "EvalEntry",
    "FieldsSection",
    "HubSection",
    "LoraSection",
    "Problem",
    "ReviewSection",
    "RunDirBusy",
    "RunPaths",
    "RunResult",
    "RunSection",
    "StudentSection",
    "TeacherSection",
    "TrainRecord",
    "TrainSection",
    "arun",
    "config_from",
    "load",
    "records",
    "run",
    "train_records",
]
