"""The reader study: DermGAN's Human Turing test (Ghorbani et al., arXiv 1911.08716, §4) as a platform feature.

Readers see a shuffled, balanced mix of real and synthetic images one at a time and say "real" or
"synthetic" and, optionally, the diagnosis. The pure parts — the reading list (``reading_list``), the answers
(``answers``) and the statistics (``statistics``) — touch neither a store nor the web; ``study_store`` keeps
studies and answers in the platform store, ``app`` is the web page, ``skingenbench reader-study`` the command.
"""
