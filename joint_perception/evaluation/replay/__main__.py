"""``python -m joint_perception.evaluation.replay``: the ``replay`` command."""

from joint_perception.evaluation.replay.cli import main

raise SystemExit(main())
