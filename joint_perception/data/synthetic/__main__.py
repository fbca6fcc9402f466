"""``python -m joint_perception.data.synthetic [out.png]``: write the preview grid of
:func:`~joint_perception.data.synthetic.preview.save_preview` (default
``docs/images/synthetic_samples.png``)."""

import sys

from joint_perception.data.synthetic.preview import save_preview

print(save_preview(sys.argv[1] if len(sys.argv) > 1 else "docs/images/synthetic_samples.png"))
