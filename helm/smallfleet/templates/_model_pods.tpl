{{/* The pod spec body of a llama.cpp model server; call with (dict "root" $ "model" $model). */}}
{{- define "smallfleet.llamaCppPod" -}}
{{- $root := .root -}}
{{- $m := .model -}}
{{- $gguf := $m.gguf | default dict -}}
{{- $file := "/models/model.gguf" -}}
{{- if $gguf.volume }}{{ $file = printf "/models/%s" $gguf.volume.path }}{{ end -}}
{{- if $gguf.packaged }}
initContainers:
  - name: copy-gguf
    image: {{ include "smallfleet.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: [python, -m, deploy.gguf_copy]
    args: [{{ printf "packaged:%s" $gguf.packaged | quote }}, {{ $file | quote }}]
    env:
      - {name: HOME, value: /tmp}
    resources:
      requests: {cpu: 100m, memory: 128Mi}
      limits: {cpu: "1", memory: 512Mi}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: models, mountPath: /models}
      - {name: tmp, mountPath: /tmp}
{{- end }}
containers:
  - name: llama-cpp
    image: {{ include "smallfleet.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: [python, -m, llama_cpp.server]
    args:
      - --model={{ $file }}
      - --model_alias={{ $m.name }}
      - --host=0.0.0.0
      - --port={{ $root.Values.modelServer.port }}
      - --n_ctx={{ $m.contextLength | default 4096 | int }}
      - --n_threads={{ $m.threads | default 2 | int }}
      - --verbose=False
      {{- range $m.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - {name: HOME, value: /tmp}
    ports:
      - name: http
        containerPort: {{ $root.Values.modelServer.port }}
        protocol: TCP
    # llama_cpp.server opens its port only once the model is loaded, and its HTTP routes
    # wait behind a running generation, so the probes check the socket.
    startupProbe:
      tcpSocket: {port: http}
      periodSeconds: 2
      failureThreshold: 150
    livenessProbe:
      tcpSocket: {port: http}
      periodSeconds: 10
      failureThreshold: 3
    readinessProbe:
      tcpSocket: {port: http}
      periodSeconds: 5
    lifecycle:
      preStop:
        exec: {command: [sleep, "5"]}
    resources:
      {{- toYaml ($m.resources | default dict) | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: models, mountPath: /models, readOnly: true}
      - {name: tmp, mountPath: /tmp}
volumes:
  {{- if $gguf.volume }}
  - name: models
    persistentVolumeClaim:
      claimName: {{ $gguf.volume.claimName }}
      readOnly: true
  {{- else }}
  - name: models
    emptyDir: {}
  {{- end }}
  - name: tmp
    emptyDir: {}
{{- with $root.Values.modelServer.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.modelServer.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.modelServer.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod spec body of a vLLM model server on a GPU. */}}
{{- define "smallfleet.vllmPod" -}}
{{- $root := .root -}}
{{- $m := .model -}}
{{- $v := $root.Values.vllm -}}
{{- $image := $m.image | default $v.image -}}
{{- $source := $m.hfModel -}}
{{- if $m.gguf }}{{ if $m.gguf.volume }}{{ $source = printf "/models/%s" $m.gguf.volume.path }}{{ end }}{{ end -}}
containers:
  - name: vllm
    image: {{ printf "%s:%s" $image.repository $image.tag }}
    imagePullPolicy: {{ $image.pullPolicy | default "IfNotPresent" }}
    command: [vllm, serve]
    args:
      - {{ $source | quote }}
      - --served-model-name={{ $m.name }}
      - --host=0.0.0.0
      - --port={{ $v.port }}
      - --max-model-len={{ $m.contextLength | default 4096 | int }}
      - --gpu-memory-utilization={{ $v.gpuMemoryUtilization }}
      {{- range $m.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - {name: HOME, value: /tmp}
      - {name: HF_HOME, value: /tmp/hf}
      {{- if $v.hfTokenSecret }}
      - name: HF_TOKEN
        valueFrom:
          secretKeyRef: {name: {{ $v.hfTokenSecret }}, key: HF_TOKEN}
      {{- end }}
    ports:
      - name: http
        containerPort: {{ $v.port }}
        protocol: TCP
    startupProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 5
      failureThreshold: 180
    livenessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 10
      timeoutSeconds: 5
    readinessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 5
      timeoutSeconds: 5
    resources:
      {{- toYaml ($m.resources | default $v.resources) | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: dshm, mountPath: /dev/shm}
      {{- if and $m.gguf $m.gguf.volume }}
      - {name: models, mountPath: /models, readOnly: true}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  - name: dshm
    emptyDir: {medium: Memory, sizeLimit: {{ $v.shmSize }}}
  {{- if and $m.gguf $m.gguf.volume }}
  - name: models
    persistentVolumeClaim:
      claimName: {{ $m.gguf.volume.claimName }}
      readOnly: true
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
