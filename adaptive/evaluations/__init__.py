"""The paper's evaluations beyond the sweep, each a study of its own: A2D's detection
(``a2d``), MagNet's (``magnet``), CLEVER scores (``clever``, ``clever_study``), per-image attack
costs (``attack_costs``), the adversarial test sets they share (``adversarial_sets``), A2D's
parameter table (``a2d_parameters``) and the cross-check of our C&W against Foolbox's
(``foolbox_check``)."""
