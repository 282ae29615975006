// Submit the SMART authorization form at once (Epic recommends POST: launch tokens can be long).
document.getElementById("authorize-form").submit();
