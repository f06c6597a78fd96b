using System.Net.Sockets;

namespace RouteReplay.Server;

/// <summary>The server cannot listen on its <c>--host</c> and <c>--port</c>: one clear line for the user.</summary>
public sealed class ServerListenException(string message, Exception inner) : IOException(message, inner)
{
    public static ServerListenException For(ServerOptions options, Exception error)
    {
        var socket = error as SocketException ?? error.InnerException as SocketException ?? error.InnerException?.InnerException as SocketException;
        var reason = socket?.SocketErrorCode switch
        {
            SocketError.AddressAlreadyInUse => "the port is already in use (another server?); choose another --port, or 0 for any free one",
            SocketError.AddressNotAvailable => "the address is not one of this machine's; check --host",
            SocketError.AccessDenied => "permission denied (ports below 1024 need privileges); choose another --port",
            _ => error.Message,
        };
        return new ServerListenException($"cannot listen on {options.Host}:{options.Port}: {reason}", error);
    }
}
