"""admission-host: a pluggable Kubernetes mutating admission webhook host.

The public face for plugin authors; plugins import only from here (and ``framework.testing``)::

    from framework import hookimpl, Mutator, Watch, Controller, Denied
"""

from framework.admission.patch import make_patch
from framework.admission.review import AdmissionRequest
from framework.event_loop import LeaveEventLoop, leave_event_loop
from framework.hookspecs import hookimpl, hookspec
from framework.kube.client import (JSON_PATCH, MERGE_PATCH, METADATA_ONLY, ApiError, CredentialsError, KubeClient,
                                   list_pages, object_path)
from framework.kube.frozen import ReadOnlyError, thaw
from framework.kube.labels import InvalidSelector, LabelSelector
from framework.kube.reflector import Reflector
from framework.kube.store import Store
from framework.kube.workqueue import WorkQueue
from framework.types import FAIL, IGNORE, Controller, Denied, Mutator, Watch

__version__ = "0.1.0"

__all__ = [
    "AdmissionRequest", "ApiError", "Controller", "CredentialsError", "Denied", "FAIL", "IGNORE", "InvalidSelector", "JSON_PATCH",
    "KubeClient", "LabelSelector", "LeaveEventLoop", "MERGE_PATCH", "METADATA_ONLY", "Mutator", "ReadOnlyError", "Reflector", "Store", "Watch",
    "WorkQueue", "hookimpl", "hookspec", "leave_event_loop", "list_pages", "make_patch", "object_path", "thaw",
]
