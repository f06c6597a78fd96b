using System.Text.Json;

namespace RouteReplay.Server.Router;

/// <summary>What the router reads of a server's <c>/get_model_info</c>.</summary>
internal sealed record ServerInfo(string? Role, int? TransferPort, string? WeightVersion, string? Model, string? PrefillTrust, string? ClusterKeyId)
{
    public static ServerInfo Parse(JsonElement root) => new(
        Text(root, "disaggregation_role"),
        root.TryGetProperty("transfer_port", out var port) && port.TryGetInt32(out var number) ? number : null,
        Text(root, "weight_version"),
        Text(root, "served_model_name"),
        Text(root, "prefill_trust"),
        Text(root, "cluster_key_id"));

    /// <summary>Asks <paramref name="server"/>, with the API key when there is one.</summary>
    /// <exception cref="HttpRequestException">The server cannot be reached.</exception>
    /// <exception cref="ServerInfoException">It answered with an error, or with something other than JSON.</exception>
    public static async Task<ServerInfo> FetchAsync(HttpClient http, Upstream server, string? apiKey, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, server.Url("/get_model_info"));
        if (apiKey is not null)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        }
        using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new ServerInfoException($"answered /get_model_info with {(int)response.StatusCode}: {UpstreamErrors.Parse(text).Message}");
        }
        try
        {
            using var document = JsonDocument.Parse(text);
            return Parse(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new ServerInfoException($"is not a RouteReplay server (its /get_model_info is not JSON: {e.Message})");
        }
    }

    private static string? Text(JsonElement root, string name) =>
        root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}

/// <summary>A server answered <c>/get_model_info</c> with an error or with something else than its model info.</summary>
internal sealed class ServerInfoException(string message) : Exception(message);
