"""What is on disk and how its bytes arrive: the model manager proper.

``store`` (the HF cache layout, manifests, verify, delete), ``remote`` (hub metadata),
``transfer`` (where a download's bytes are written: ranged parts, the range record, hashing,
the stall watchdog), ``downloads`` (DownloadManager: one job per repository, limits,
bundling), ``sizes``, ``netfaults`` (transport errors -> named errors), ``nltk_data``.
May import ``modelmgr.core`` only; never torch.
"""
