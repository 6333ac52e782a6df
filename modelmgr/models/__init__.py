"""What is on disk and how its bytes arrive: the model manager proper.

* ``store`` (Store: complete / incomplete, verify, delete) over ``cache_layout`` (huggingface_hub's
  cache folders, refs, snapshots, free space) and ``manifests`` (what a model's files should be).
* ``remote``: hub metadata (one model_info call with a deadline) -> Manifest.
* ``transfer/``: where a download's bytes are written: ranged parts (``parts``, ``scheduler``,
  ``ramp``, ``part_fetch``), the range record beside each partial (``record``), the hash of the
  finished prefix (``hasher``), the stall watchdog (``watchdog``), one file end to end (``file``).
* ``downloads/``: DownloadManager: one job per repository (``registry``), per-kind limits
  (``scheduler``), the download thread (``worker``), bundled aligners (``bundle``), progress
  (``progress``), verify and delete (``maintenance``), update checks (``updates``).
* ``sizes`` (sizes before download), ``netfaults`` (transport errors -> named errors),
  ``nltk_data`` (punkt_tab for whisperx.align).

May import ``modelmgr.core`` only; never torch.
"""
