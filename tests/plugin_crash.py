"""A plug-in defense whose detector kills the Ray worker that runs it, once, when a test asks
for it (a file ``kill-once`` in ``$ADAPTIVE_TEST_KILL_DIR``): the crash that the executor must
survive. The test's own process (``$ADAPTIVE_TEST_DRIVER_PID``) never dies; otherwise it is
``tests/plugin_defense.py``'s defense."""

import os
import signal
from pathlib import Path

from tests.plugin_defense import LowConfidenceDetector
from tests.plugin_defense import make_defense as _make_defense


class DyingOnceDetector(LowConfidenceDetector):
    def score(self, x):
        kill_dir = os.environ.get("ADAPTIVE_TEST_KILL_DIR")
        if kill_dir and str(os.getpid()) != os.environ.get("ADAPTIVE_TEST_DRIVER_PID"):
            try:  # the rename succeeds for one worker only
                os.rename(Path(kill_dir) / "kill-once", Path(kill_dir) / "killed")
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().score(x)


def make_defense(model, dataset, device):
    defense = _make_defense(model, dataset, device)
    unsure = defense.detectors["unsure"]
    dying = DyingOnceDetector(model)
    dying.threshold = unsure.threshold
    defense.detectors["unsure"] = dying
    return defense
