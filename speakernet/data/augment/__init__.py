"""Waveform augmentation: simulated room impulse responses, the operations, and the :class:`Augmenter`.

* :mod:`.simulate` writes simulated RIRs (pyroomacoustics' image method, the optional ``augment``
  extra) in the RIRS_NOISES layout, and their data dirs;
* :mod:`.ops` the numpy operations (additive noise at an SNR, babble, reverberation, speed
  perturbation), each deterministic under a ``numpy.random.Generator``;
* :mod:`.augmenter` loads noise and RIR sources from data dirs and applies a random chain of
  them to a waveform, configured from a dict.

The sources themselves are prepared by :mod:`speakernet.data.prepare.musan`,
:mod:`speakernet.data.prepare.rirs` and :mod:`speakernet.data.prepare.noise_dir`.
"""
