// Follows a running task's log on its page: the API's event stream replays every line
// and then sends new ones until the task finishes; lines already on the page are skipped.
(function () {
  "use strict";
  function when(at) {
    return typeof at === "string" && at.charAt(10) === "T" ? at.slice(0, 10) + " " + at.slice(11, 19) + " UTC" : at;
  }
  function statusBadge(status) {
    var span = document.createElement("span");
    span.className = "status status-" + status;
    span.textContent = status;
    return span;
  }
  function follow(log) {
    var status = log.dataset.status;
    if (status !== "queued" && status !== "running") return;
    var last = Number(log.dataset.lastSeq || 0);
    var source = new EventSource("/api/v1/tasks/" + encodeURIComponent(log.dataset.task) + "/log");
    source.addEventListener("log", function (event) {
      var line = JSON.parse(event.data);
      if (line.seq <= last) return;
      last = line.seq;
      var item = document.createElement("li");
      item.className = "level-" + line.level;
      item.dataset.seq = line.seq;
      var time = document.createElement("time");
      time.textContent = when(line.at);
      var from = document.createElement("span");
      from.className = "source";
      from.textContent = line.source;
      item.append(time, " ", from, " ", line.message);
      log.append(item);
    });
    source.addEventListener("finished", function (event) {
      source.close();
      var task = JSON.parse(event.data);
      var cell = document.getElementById("task-status");
      if (cell) cell.replaceChildren(statusBadge(task.status));
      var started = document.getElementById("task-started");
      if (started && task.started_at) started.textContent = when(task.started_at);
      var cancel = document.getElementById("task-cancel");
      if (cancel) cancel.remove();
      var finished = document.getElementById("task-finished");
      if (finished) finished.textContent = when(task.finished_at);
      var following = document.getElementById("log-following");
      if (following) following.remove();
      if (task.reason) {
        var reason = document.createElement("p");
        reason.id = "task-reason";
        reason.className = "error";
        reason.textContent = task.reason;
        log.after(reason);
      }
      log.dataset.status = task.status;
    });
    // The browser reconnects by itself after a dropped connection (resending the last id).
  }
  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("task-log");
    if (log) follow(log);
    // Buttons that act at once ask first (delete, disable, restore, migrate).
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
