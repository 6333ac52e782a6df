"""Downloads: what to fetch, in which order, exactly once.

A package rather than one module because the parts change for different reasons: ``registry``
(one job per repository, the lock), ``scheduler`` (per-kind limits and the waiting queues),
``worker`` (the thread of a download or update), ``maintenance`` (verify and delete),
``progress`` (the API's model objects and the published events), ``updates`` (the hub's
commits and the background check), ``bundle`` (alignment models that come with a Whisper
model) and ``jobs`` (the records they share). ``manager.DownloadManager`` puts them together
and is what the rest of the app uses; the names below are re-exported so that
``from modelmgr.models.downloads import DownloadManager`` keeps working.
"""

from modelmgr.models.downloads.jobs import IN_FLIGHT, Job, SpeedMeter, StartResult
from modelmgr.models.downloads.manager import DownloadManager
from modelmgr.models.downloads.updates import UPDATE_CHECK_FIRST_DELAY_S

__all__ = ["IN_FLIGHT", "UPDATE_CHECK_FIRST_DELAY_S", "DownloadManager", "Job", "SpeedMeter", "StartResult"]
