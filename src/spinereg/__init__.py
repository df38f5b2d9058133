"""spinereg: spinal cord and spine image registration.

Library first: every command-line tool is a thin parser over the functions exported here and in
the subpackages (``io``, ``transforms``, ``metrics``, ...). All geometry is in world space
(NIfTI RAS+ millimetres); ITK/ANTs files (LPS+) are converted at the file boundary.
"""

__version__ = "0.1.0"
