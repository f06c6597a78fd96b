using System.Net.Sockets;
using System.Text;

namespace RouteReplay.Tests.Support;

/// <summary>Sends bytes a well-behaved HTTP client never would over a plain TCP connection, and reads the answer.</summary>
public static class RawHttp
{
    /// <summary>
    /// Writes <paramref name="request"/> to <paramref name="server"/> and reads until the server closes the connection or
    /// a whole response (headers and the body its Content-Length gives) has come; fails after 30 s.
    /// </summary>
    /// <returns>The status code and the response's text (headers and body).</returns>
    public static async Task<(int Status, string Response)> SendAsync(Uri server, byte[] request)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(request, timeout.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        while (!IsComplete(received.ToArray()))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            if (read == 0)
            {
                break;
            }
            received.Write(buffer, 0, read);
        }
        var text = Encoding.UTF8.GetString(received.ToArray());
        Assert.True(text.StartsWith("HTTP/1.1 ", StringComparison.Ordinal), $"no HTTP response came back: '{text}'");
        return (int.Parse(text.AsSpan(9, 3), System.Globalization.CultureInfo.InvariantCulture), text);
    }

    private static bool IsComplete(byte[] received)
    {
        var text = Encoding.UTF8.GetString(received);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0)
        {
            return false;
        }
        var length = text[..end].Split("\r\n").FirstOrDefault(h => h.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        return length is not null && received.Length - (end + 4) >= int.Parse(length["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
