// "Re-read from the EHR": show that the read is running (it waits on the EHR) and stop a second click.
document.querySelectorAll("form.reread").forEach(function (form) {
  form.addEventListener("submit", function () {
    var button = form.querySelector("button[value=reread]");
    if (!button) return;
    // Disabled after this event: a button disabled now would not be submitted with the form.
    window.setTimeout(function () {
      button.disabled = true;
      button.textContent = "Reading from the EHR…";
      button.setAttribute("aria-busy", "true");
    }, 0);
    var status = form.querySelector("[role=status]") || document.createElement("span");
    status.setAttribute("role", "status");
    status.className = "muted";
    status.textContent = "This can take a few seconds.";
    form.appendChild(status);
  });
});
