wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("MW_KEY")
wrk.path = "/v1/inboxes/" .. os.getenv("MW_INBOX") .. "/inbound"
wrk.body = '{"from":"bench@example.com","subject":"Re: Your order","text":"' .. string.rep("x", 600) .. '"}'
