"""``python -m joint_perception.data.sevenscenes``: :func:`~.cli.main`."""

from joint_perception.data.sevenscenes.cli import main

raise SystemExit(main())
