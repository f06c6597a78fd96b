using System.Net;
using System.Net.Sockets;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>A prefill server's transfer listener serves at most <see cref="TransferServer.MaxConnections"/> connections at once; it closes and counts the others.</summary>
public sealed class TransferConnectionLimitTests
{
    /// <summary>A host no transfer gets far enough to use: its connections never send their handshake.</summary>
    private sealed class SilentPeersHost : IPrefillHost
    {
        public PeerDescription Description => null!;

        public Task<IDisposable> StartAsync(EngineRequest request, CancellationToken cancellationToken) => throw new InvalidOperationException("no transfer asks for a prefill here");

        public Task ReleaseAsync(BlockExport export) => Task.CompletedTask;
    }

    [Fact]
    public async Task Connections_past_the_limit_are_closed_at_once_and_counted_while_admitted_ones_stay_open()
    {
        var stats = new TransferStats();
        await using var server = new TransferServer(new SilentPeersHost(), IPAddress.Loopback, new DisaggregationOptions(), stats, _ => { }) { MaxConnections = 2 };
        server.Start();
        var endpoint = new IPEndPoint(IPAddress.Loopback, server.Port);
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 4; i++)
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                await socket.ConnectAsync(endpoint);
            }
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var buffer = new byte[16];
            Assert.Equal(0, await sockets[2].ReceiveAsync(buffer, SocketFlags.None, timeout.Token));
            Assert.Equal(0, await sockets[3].ReceiveAsync(buffer, SocketFlags.None, timeout.Token));
            Assert.Equal(2, stats.RefusedConnections);
            Assert.True(sockets[0].Poll(0, SelectMode.SelectRead) is false && sockets[1].Poll(0, SelectMode.SelectRead) is false, "an admitted connection was closed");
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }
}
