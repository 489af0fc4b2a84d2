"""The suite config: suite-wide settings and the tasks, a mapping from task name to task config (``kind:`` picks
the config class). Task names prefix the metrics (``gsm8k/exact_match``) and name the record files."""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import Field, field_validator

from onlyif.config import Config
from onlyif.eval.suite.base import ChatSetting
from onlyif.eval.suite.choice import ChoiceSpec
from onlyif.eval.suite.code import HUMANEVAL, CodeSpec
from onlyif.eval.suite.qa import QASpec

TaskConfig = Annotated[QASpec | ChoiceSpec | CodeSpec, Field(discriminator="kind")]
"""One task's config; a new task kind adds its config class here."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SuiteConfig(Config):
    """Tasks to run on one model, and what they share."""

    tasks: dict[str, TaskConfig]
    batch_size: int = Field(16, ge=1)
    """Prompts decoded (QA) or sequences scored (multiple choice) at once."""
    chat_template: ChatSetting = "auto"
    """Render prompts with the model's chat template: ``auto`` (when it has one), ``true`` or ``false``; a task's
    own ``chat_template`` overrides it."""

    @field_validator("tasks")
    @classmethod
    def _check_names(cls, tasks: dict[str, TaskConfig]) -> dict[str, TaskConfig]:
        if not tasks:
            raise ValueError("name at least one task")
        for name in tasks:
            if not _NAME.fullmatch(name) or name == "suite":
                raise ValueError(f"{name}: a task name holds letters, digits, '_', '.', '-' (and is not 'suite')")
        return tasks

    def with_absolute_paths(self, base: str | os.PathLike) -> SuiteConfig:
        """A copy whose relative data paths are absolute against ``base`` (a sweep trial runs in its own working
        directory)."""
        from onlyif.io import absolute

        data = self.to_dict()
        for task in data["tasks"].values():
            for key in ("path", "shots_path", "benchmark"):
                if task.get(key) is not None and task[key] != HUMANEVAL:
                    task[key] = absolute(task[key], base)
        return SuiteConfig.model_validate(data)
