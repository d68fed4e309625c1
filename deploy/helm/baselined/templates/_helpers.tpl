{{/* The chart name, overridable. */}}
{{- define "baselined.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource name prefix: release and chart name, overridable. */}}
{{- define "baselined.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "baselined.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* chart name and version for the helm.sh/chart label. */}}
{{- define "baselined.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "baselined.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baselined.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels (helm.sh/docs/chart_best_practices/labels). */}}
{{- define "baselined.labels" -}}
helm.sh/chart: {{ include "baselined.chart" . }}
{{ include "baselined.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baselined
{{- end -}}

{{/* The sidecar container (without restartPolicy; the Deployment adds it for a native sidecar). */}}
{{- define "baselined.sidecarContainer" -}}
name: baselined
image: {{ printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) | quote }}
imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
env:
  - name: BASELINED_LISTEN
    value: {{ printf "unix:%s/sidecar.sock" .Values.sidecar.socketDir | quote }}
  - name: BASELINED_HEALTH_LISTEN
    value: {{ printf "0.0.0.0:%v" .Values.sidecar.healthPort | quote }}
  - name: BASELINED_HTTP_LISTEN
    value: {{ printf "127.0.0.1:%v" .Values.sidecar.httpPort | quote }}
  - name: BASELINED_PROMETHEUS_METRICS
    value: "true"
  - name: BASELINED_STORE
    value: {{ .Values.sidecar.store | quote }}
  - name: BASELINED_GUARDRAILS
    value: /etc/baselined/guardrails.toml
  - name: BASELINED_SHUTDOWN_GRACE
    value: {{ .Values.sidecar.shutdownGrace | quote }}
  {{- if .Values.sidecar.alertmanagerUrl }}
  - name: BASELINED_ALERTMANAGER_URL
    value: {{ .Values.sidecar.alertmanagerUrl | quote }}
  {{- end }}
  {{- include "baselined.downwardEnv" . | nindent 2 }}
  - name: OTEL_SERVICE_NAME
    value: baselined-sidecar
  - name: OTEL_RESOURCE_ATTRIBUTES
    value: {{ printf "deployment.environment.name=%s,k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME)" .Values.modelServer.environment | quote }}
  {{- if .Values.sidecar.otlpEndpoint }}
  - name: BASELINED_OTEL_EXPORTER
    value: otlp
  - name: OTEL_EXPORTER_OTLP_ENDPOINT
    value: {{ .Values.sidecar.otlpEndpoint | quote }}
  {{- end }}
  {{- with .Values.sidecar.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: grpc-health
    containerPort: {{ .Values.sidecar.healthPort }}
startupProbe:
  grpc:
    port: {{ .Values.sidecar.healthPort }}
  periodSeconds: 2
  failureThreshold: 30
readinessProbe:
  grpc:
    port: {{ .Values.sidecar.healthPort }}
  periodSeconds: 10
livenessProbe:
  grpc:
    port: {{ .Values.sidecar.healthPort }}
  periodSeconds: 20
  failureThreshold: 3
resources:
  {{- toYaml .Values.sidecar.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: baselined-socket
    mountPath: {{ .Values.sidecar.socketDir }}
  - name: baselined-guardrails
    mountPath: /etc/baselined
    readOnly: true
  - name: baselined-tmp
    mountPath: /tmp
{{- end -}}

{{/* POD_NAME, POD_NAMESPACE and NODE_NAME from the Downward API. */}}
{{- define "baselined.downwardEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}

{{/* The pod volumes the sidecar needs. */}}
{{- define "baselined.sidecarVolumes" -}}
- name: baselined-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: baselined-guardrails
  configMap:
    name: {{ include "baselined.fullname" . }}-guardrails
- name: baselined-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}
