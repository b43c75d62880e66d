// The public signup form: posts to the signup API and shows where the new organisation lives.
document.getElementById("signup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = document.getElementById("result");
  const body = Object.fromEntries(new FormData(event.target));
  const response = await fetch("/api/signup/", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) { result.className = "error"; result.textContent = data.error.message; return; }
  result.className = "";
  if (data.checkout_url) { window.location = data.checkout_url; return; }
  result.innerHTML = "";
  const link = document.createElement("a");
  link.href = data.tenant.url + "login/"; link.textContent = "Log in to " + data.tenant.name + " at " + data.tenant.url;
  result.append("Your organisation is ready. ", link);
});
