"""Point prompts as the pack passes them between operations: at most ``MAX_POINTS`` per image, DICEPTION's five
point slots (PerSAM Segment keeps that many positive points per image for Perceive Task; the graph editor's point
picker reads it from the ``max_points`` option of Perceive Task's ``points`` input in /object_info)."""

MAX_POINTS = 5
