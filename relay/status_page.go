package relay

import "strconv"

func strconvF(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// statusPageHTML is the relay's status page: the facts server-rendered, and
// a small script that polls /status.json to show each route's throughput
// live. Without JavaScript it is a static snapshot.
const statusPageHTML = `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Burrow relay — status</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd}
th{font-weight:600;background:#f6f6f6}.ok{color:#17652b}.bad{color:#a11}small{color:#777}ol.log{padding-left:1.4em;font-size:13px}ol.log code{white-space:pre-wrap;word-break:break-all}td.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head><body>
<h1>Burrow relay</h1>
<p>{{if .Ready}}<span class="ok">● ready</span>{{else}}<span class="bad">● not ready</span>: {{.Reason}}{{end}}
 · up {{ago .Since}}{{with .Detail.Listeners}} · {{range $k, $v := .}}{{$k}} {{$v}} {{end}}{{end}}</p>
<h2>Agent sessions</h2>
{{with .Detail.Sessions}}<table><tr><th>agent</th><th>session</th><th>transport</th><th>remote</th><th>connected for</th><th>RTT</th><th>loss</th><th>streams</th></tr>
{{range .}}<tr><td>{{.Agent}}</td><td>{{.ID}}</td><td>{{.Transport}}</td><td>{{.Remote}}</td><td>{{ago .Since}}</td><td class="num">{{ms .RTT}}</td><td class="num">{{pct .LossRate}}</td><td class="num">{{.Streams}}</td></tr>
{{end}}</table>{{else}}<p>No agent is connected. Granted agents: {{range .Detail.Agents}}{{.}} {{end}}</p>{{end}}
<h2>Routes</h2>
{{with .Detail.Routes}}<table id="routes"><tr><th>host</th><th>prefix</th><th>agent</th><th>served by</th><th>sent</th><th>throughput</th></tr>
{{range .}}<tr data-route="{{.Host}}{{.Prefix}}"><td>{{.Host}}</td><td>{{.Prefix}}</td><td>{{.Agent}}</td><td>{{range .Sessions}}{{.}} {{end}}</td><td class="num sent">{{.BytesSent}} B</td><td class="num rate">–</td></tr>
{{end}}</table>{{else}}<p>No route is published.</p>{{end}}
<h2>Certificates</h2>
{{with .Detail.Certificates}}<table id="certificates"><tr><th>name</th><th>use</th><th>source</th><th>issuer</th><th>expires</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{.Use}}</td><td>{{.Source}}</td><td>{{.Issuer}}</td><td>{{if .NotAfter.IsZero}}<span class="bad">not obtained yet (see the recent errors)</span>{{else}}{{expires .NotAfter}}{{end}}</td></tr>
{{end}}</table>{{else}}<p>No certificate.</p>{{end}}
<h2>Recent errors</h2>
{{with .Errors}}<ol id="errors" class="log">{{range .}}<li><code>{{.}}</code></li>{{end}}</ol>{{else}}<p class="ok">None since the relay started.</p>{{end}}
<p><small>Metrics for Prometheus at <a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a> · <a href="/readyz">/readyz</a></small></p>
<script>
(function(){
  var last = {}, lastT = 0;
  function fmt(b){var u=["B","KB","MB","GB","TB"],i=0;while(b>=1000&&i<u.length-1){b/=1000;i++}return b.toFixed(i?1:0)+" "+u[i]}
  function tick(){
    fetch("/status.json",{cache:"no-store"}).then(function(r){return r.json()}).then(function(st){
      var now = Date.now(), dt = (now-lastT)/1000;
      (st.detail.routes||[]).forEach(function(rt){
        var key = rt.host+(rt.prefix||""), row = document.querySelector('tr[data-route="'+CSS.escape(key)+'"]');
        if(!row) return;
        row.querySelector(".sent").textContent = fmt(rt.bytes_sent);
        if(lastT && key in last) row.querySelector(".rate").textContent = fmt(Math.max(0,(rt.bytes_sent-last[key])/dt))+"/s";
        last[key] = rt.bytes_sent;
      });
      lastT = now;
    }).catch(function(){});
  }
  tick(); setInterval(tick, 1000);
})();
</script>
</body></html>
`
