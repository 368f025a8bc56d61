"""Tar shards of a data dir's audio, for training from audio at scale (``data.source: shards``).

A million small files cost a million opens per epoch; a shard holds a thousand utterances, read
front to back. The pieces:

- :mod:`.format`: one shard (a tar of ``<utt>.flac`` and ``<utt>.spk`` members) and its index
  (``shard-N.json``: the utterances in tar order with speaker and length), ``D/shards.list``.
- :mod:`.stage`: ``make_shards``, the parallel stage that writes them (``--nj`` jobs through the launcher).
- :mod:`.dataset`: the epoch plan (shard order, lanes, shuffle buffers, crop seeds) and the
  ``IterableDataset`` that follows it, exactly, with any number of DataLoader workers dividing the lanes.
"""
