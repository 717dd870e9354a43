{{/* Chart name, truncated to a DNS label. */}}
{{- define "smallfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name every resource starts with. */}}
{{- define "smallfleet.fullname" -}}
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

{{- define "smallfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "smallfleet.labels" -}}
helm.sh/chart: {{ include "smallfleet.chart" . }}
{{ include "smallfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "smallfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smallfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "smallfleet.gatewaySelectorLabels" -}}
{{ include "smallfleet.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "smallfleet.gatewayName" -}}
{{- printf "%s-gateway" (include "smallfleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "smallfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "smallfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "smallfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "smallfleet.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "smallfleet.fullname" .)) .Values.apiKeys.existingSecret -}}
{{- end -}}

{{- define "smallfleet.requestLogSecret" -}}
{{- default (printf "%s-request-log" (include "smallfleet.fullname" .)) .Values.requestLog.existingSecret -}}
{{- end -}}

{{/* The Secret holding SMALLFLEET_STATE_URL (and the chart's Redis password). */}}
{{- define "smallfleet.stateSecret" -}}
{{- default (printf "%s-state" (include "smallfleet.fullname" .)) .Values.state.existingSecret -}}
{{- end -}}

{{- define "smallfleet.redisName" -}}
{{- printf "%s-redis" (include "smallfleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when the gateway replicas share a store (state.url, existingSecret or the chart's Redis). */}}
{{- define "smallfleet.sharesState" -}}
{{- if or .Values.state.url .Values.state.existingSecret .Values.state.redis.enabled -}}true{{- end -}}
{{- end -}}

{{- define "smallfleet.routerClaim" -}}
{{- default (printf "%s-router" (include "smallfleet.fullname" .)) .Values.router.persistence.existingClaim -}}
{{- end -}}

{{/* A model name as a DNS label: "qwen2.5-coder-0.5b" -> "qwen2-5-coder-0-5b". */}}
{{- define "smallfleet.modelSlug" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trunc 40 | trimAll "-" -}}
{{- end -}}

{{/* Resource name of one model's server; call with (dict "root" $ "model" $model). */}}
{{- define "smallfleet.modelServerName" -}}
{{- printf "%s-model-%s" (include "smallfleet.fullname" .root) (include "smallfleet.modelSlug" .model.name) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "smallfleet.modelSelectorLabels" -}}
{{ include "smallfleet.selectorLabels" .root }}
app.kubernetes.io/component: model-server
smallfleet.dev/model: {{ include "smallfleet.modelSlug" .model.name }}
{{- end -}}

{{/* The port a model's server listens on. */}}
{{- define "smallfleet.modelPort" -}}
{{- if eq .model.engine "vllm" -}}{{ .root.Values.vllm.port | int }}{{- else -}}{{ .root.Values.modelServer.port | int }}{{- end -}}
{{- end -}}

{{/* The `models:` list of the fleet YAML: every model server becomes an `openai` backend. */}}
{{- define "smallfleet.fleetModels" -}}
{{- $root := . -}}
{{- $models := list -}}
{{- range .Values.models -}}
{{- $ctx := dict "root" $root "model" . -}}
{{- $url := printf "http://%s:%s/v1" (include "smallfleet.modelServerName" $ctx) (include "smallfleet.modelPort" $ctx) -}}
{{- $entry := dict "name" .name "backend" "openai" "base_url" $url "upstream_model" .name "timeouts" $root.Values.modelServer.timeouts -}}
{{- with .contextLength }}{{ $_ := set $entry "context_length" (int .) }}{{ end -}}
{{- with .params }}{{ $_ := set $entry "params" . }}{{ end -}}
{{- with .quant }}{{ $_ := set $entry "quant" . }}{{ end -}}
{{- with .price }}{{ $_ := set $entry "price" . }}{{ end -}}
{{- $models = append $models $entry -}}
{{- end -}}
{{- concat $models .Values.fleet.extraModels | toYaml -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "smallfleet.podCommon" -}}
serviceAccountName: {{ include "smallfleet.serviceAccountName" . }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
