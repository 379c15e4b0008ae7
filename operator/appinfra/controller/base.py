"""What every part of the runtime holds: the clients, the cache and the indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

from appinfra.api.operatorconfig import OperatorConfig
from appinfra.kube.apis import ApiPresence
from appinfra.kube.cache import Store
from appinfra.kube.client import Kube
from appinfra.kube.resources import DEPLOYMENT
from appinfra.kube.targets import TargetIndex
from appinfra.providers.registry import Providers


@dataclass
class RuntimeBase:
    kube: Kube
    providers: Providers
    config: OperatorConfig = field(default_factory=OperatorConfig)
    # Deployments keep managedFields: HealthPolicy reads which probes our manager owns.
    store: Store = field(default_factory=lambda: Store(keep_managed_fields=(DEPLOYMENT,)))
    targets: TargetIndex = field(default_factory=TargetIndex)
    apis: ApiPresence = field(default_factory=ApiPresence)  # optional CRDs served now
