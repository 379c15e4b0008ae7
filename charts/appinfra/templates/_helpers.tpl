{{/* Name of the chart, overridable. */}}
{{- define "appinfra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, with the chart name unless it already has it. */}}
{{- define "appinfra.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace: several releases (each watching
     its own namespaces) may share a release name. */}}
{{- define "appinfra.clusterName" -}}
{{- printf "%s-%s" (include "appinfra.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "appinfra.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appinfra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "appinfra.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "appinfra.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: appinfra
{{- end -}}

{{- define "appinfra.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "appinfra.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "appinfra.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
RBAC rules for the namespaced resources the operator reads and writes. The same list
goes into the ClusterRole (cluster-wide mode) or into one Role per watched namespace.
Each rule names its verbs exactly; no wildcards anywhere.
*/}}
{{- define "appinfra.namespacedRules" -}}
# The four kinds: watch them (get: a deleted one is confirmed gone), add and remove the
# finalizer (a merge patch), and write status (a merge patch of the status subresource).
# Each permission is needed by a scenario of `make rbac-ablation` (tests/support/rbac_ablation.py).
- apiGroups: ["appinfra.dev"]
  resources: ["serviceprofiles", "secretbindings", "healthpolicies", "ratelimitpolicies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["appinfra.dev"]
  resources: ["serviceprofiles/status", "secretbindings/status", "healthpolicies/status", "ratelimitpolicies/status"]
  verbs: ["patch"]
# Children carry an ownerReference with blockOwnerDeletion; clusters enforcing
# OwnerReferencesPermissionEnforcement allow that only with update on the owner's
# finalizers (HealthPolicies: their `alerts` PrometheusRule).
- apiGroups: ["appinfra.dev"]
  resources: ["serviceprofiles/finalizers", "secretbindings/finalizers", "healthpolicies/finalizers", "ratelimitpolicies/finalizers"]
  verbs: ["update"]
# Target Deployments: watched, and server-side apply of the operator's fields (never
# create/delete); get: deleting a HealthPolicy that replaced probes (Override) reads the
# Deployment's managedFields, which the cache does not keep, to hand them back.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# Rendered ConfigMaps and synced Secrets (children); Secrets are also read for store credentials.
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# ServiceProfile children.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Prometheus Operator children (ServiceProfile monitoring, HealthPolicy alerts). Granted
# whether or not its CRDs are installed: the operator waits for them and needs nothing
# more once a platform team installs them.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "podmonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# ServiceProfile monitoring: which Service fronts the target's pods (the ServiceMonitor
# goes through it). Read only for a profile with monitoring (get: a named one, list: the
# namespace's), never watched and never written.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list"]
# RateLimitPolicy targets: annotations on Ingresses (read from the watch cache).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch", "patch"]
# Events about the resources: the operator creates core/v1 Events (kopf's posting is off)
# and counts a repeat in the same Event (a merge patch of count and lastTimestamp).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- $accounts := include "appinfra.tokenServiceAccounts" . | fromJsonArray }}
{{- if $accounts }}
# Vault kubernetes auth: a TokenRequest for exactly the service accounts the stores name.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  resourceNames: {{ $accounts | toJson }}
  verbs: ["create"]
{{- end }}
{{- end -}}

{{/*
Cluster-scoped reads of kopf: its resource observer lists and watches CRDs, to notice
the appinfra kinds installed or changed after it started; with --namespace (the
watchNamespaces mode) it lists namespaces at start (without, it retries for about a
minute before it handles anything) and watches them (a watched namespace created later).
*/}}
{{- define "appinfra.clusterScopedRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}

{{/*
Credential Secrets named by the secret stores (token, appRole and aws secretRefs), as a
dict namespace -> list of Secret names. Namespaced mode grants `get` on exactly these
Secrets in namespaces it does not watch.
*/}}
{{- define "appinfra.credentialSecrets" -}}
{{- $refs := dict -}}
{{- range $store, $spec := .Values.secretStores -}}
{{- $candidates := list -}}
{{- with $spec.vault -}}{{- with .auth -}}
{{- with .token -}}{{- $candidates = append $candidates .secretRef -}}{{- end -}}
{{- with .appRole -}}{{- $candidates = append $candidates .secretRef -}}{{- end -}}
{{- end -}}{{- end -}}
{{- with $spec.aws -}}{{- with .auth -}}{{- with .secretRef -}}
{{- $candidates = append $candidates . -}}
{{- end -}}{{- end -}}{{- end -}}
{{- range $candidates -}}
{{- $names := get $refs .namespace | default list -}}
{{- $_ := set $refs .namespace (append $names .name | uniq) -}}
{{- end -}}
{{- end -}}
{{- toJson $refs -}}
{{- end -}}


{{/*
Service accounts whose tokens the operator requests: the `serviceAccount` (default
"default") of every store using Vault's kubernetes auth, as a sorted JSON list. Empty:
no store uses it, and the chart grants no TokenRequest at all.
*/}}
{{- define "appinfra.tokenServiceAccounts" -}}
{{- $names := list -}}
{{- range $store, $spec := .Values.secretStores -}}
{{- with $spec.vault -}}{{- with .auth -}}{{- with .kubernetes -}}
{{- $names = append $names (default "default" .serviceAccount) -}}
{{- end -}}{{- end -}}{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
TCP ports of the secret stores, for the NetworkPolicy: a Vault address's port (80/443
by scheme when it has none) and an AWS endpoint's (443 without an endpoint override),
as a sorted JSON list of strings.
*/}}
{{- define "appinfra.storePorts" -}}
{{- $ports := list -}}
{{- range $store, $spec := .Values.secretStores -}}
{{- $address := "" -}}
{{- with $spec.vault -}}{{- $address = .address -}}{{- end -}}
{{- with $spec.aws -}}{{- $address = default "https://aws" .endpoint -}}{{- end -}}
{{- if $address -}}
{{- $url := urlParse $address -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- $ports = append $ports (default (ternary "443" "80" (eq $url.scheme "https")) $port) -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
The admission webhook's TLS material when Helm generates it: a self-signed CA and a
serving certificate for the webhook Service, made once per render (helm install/upgrade:
rotated on every upgrade) and kept on the root context so that the Secret, the
ValidatingWebhookConfiguration's caBundle and the pod's checksum (which restarts the
pods onto the new certificate) all see the same one, whichever file renders first.
*/}}
{{- define "appinfra.webhookCerts" -}}
{{- if not (hasKey $ "appinfraWebhookCerts") -}}
{{- $service := printf "%s-webhook" (include "appinfra.fullname" .) -}}
{{- $dns := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) -}}
{{- $days := int .Values.webhook.certValidityDays -}}
{{- $ca := genCA (printf "%s-webhook-ca" (include "appinfra.fullname" .)) $days -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil $dns $days $ca -}}
{{- $_ := set $ "appinfraWebhookCerts" (dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key) -}}
{{- end -}}
{{- toJson (get $ "appinfraWebhookCerts") -}}
{{- end -}}

{{/* Labels of one alert of the PrometheusRule: (list $ "<severity>"). */}}
{{- define "appinfra.alertLabels" -}}
{{- $root := index . 0 -}}
severity: {{ index . 1 }}
{{- with $root.Values.prometheusRule.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
