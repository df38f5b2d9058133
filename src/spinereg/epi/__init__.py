"""EPI of the spinal cord: susceptibility distortion correction (field map, reverse phase-encode,
field-map-less) with the physics in :mod:`spinereg.epi.distortion`."""
